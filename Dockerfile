# syntax=docker/dockerfile:1
# Build stage: a wheel and its dependencies in a virtualenv; the final image gets only the venv.
FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/whm-exporter
COPY pyproject.toml README.md LICENSE ./
COPY whm_exporter ./whm_exporter
RUN /opt/whm-exporter/bin/pip install --no-compile .

FROM python:3.11.14-slim-bookworm
RUN groupadd --system --gid 10087 whm \
 && useradd --system --uid 10087 --gid whm --no-create-home --shell /usr/sbin/nologin whm
COPY --from=build /opt/whm-exporter /opt/whm-exporter
# The kept state (--storage.path): the user's own directory, 0700 (it holds addresses). A named
# volume starts as a copy of it, owner and mode included.
RUN install -d -m 0700 -o 10087 -g 10087 /var/lib/whm-exporter
ENV PATH=/opt/whm-exporter/bin:$PATH PYTHONUNBUFFERED=1 \
    WHM_EXPORTER_CONFIG_FILE=/etc/whm-exporter/config.yml \
    WHM_EXPORTER_STORAGE_PATH=/var/lib/whm-exporter
VOLUME /var/lib/whm-exporter
USER 10087:10087
EXPOSE 10087
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:10087/-/healthy', timeout=2).status != 200)"]
ENTRYPOINT ["whm-exporter"]
