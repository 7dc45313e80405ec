"""The staff console: server-rendered pages under /console (see service.console.web)."""
