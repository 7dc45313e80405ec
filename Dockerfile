# shopcast: multi-stage build; the runtime image holds the virtualenv and runs as a non-root user.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service service
COPY models models
COPY training training
RUN pip install .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 shopcast && mkdir /data && chown shopcast /data
COPY --from=build /opt/venv /opt/venv
COPY templates /app/templates
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SHOPCAST_DATA_DIR=/data
WORKDIR /app
USER shopcast
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live')"
CMD ["shopcast", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
