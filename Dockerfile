# camnet container image.
#   docker build -t camnet .                     # the daemon (the last stage, "camnet")
#   docker build --target lab -t camnet-lab .    # + ffmpeg, GStreamer and snmpsim for `camnet lab`
# The daemon reads /etc/camnet/camnet.yaml: mount your config directory there, read-only.
# In a container, `server.listen` must not be 127.0.0.1 unless the scraping Prometheus shares
# the container's network namespace (deploy/docker-compose.yml does that); otherwise set
# `server.listen: 0.0.0.0:9830` in the mounted config. See deploy/README.md.

FROM python:3.11-slim AS build
WORKDIR /src
# Only what the wheel needs: a change in tests/ or docs/ does not rebuild it.
COPY pyproject.toml README.md LICENSE ./
COPY monitor monitor
COPY probes probes
COPY lab lab
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed numeric uid/gid, so permissions of mounted secret files can be set on the host.
RUN groupadd --system --gid 10001 camnet \
 && useradd --system --uid 10001 --gid camnet --home-dir /var/lib/camnet --create-home \
      --shell /usr/sbin/nologin camnet \
 && mkdir -p /etc/camnet
COPY --from=build /wheels /wheels
# camnet and its runtime dependencies only (no [test] extra).
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /var/lib/camnet

# The simulated Đơn Dương site (`camnet lab`) for demos: the lab's peers on top of camnet.
FROM runtime AS lab
# The RTSP server runs under Debian's /usr/bin/python3 (GStreamer bindings); ffmpeg makes clips.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ffmpeg fonts-dejavu-core python3-gi gir1.2-gst-rtsp-server-1.0 \
      gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
 && rm -rf /var/lib/apt/lists/* \
 && pip install --no-cache-dir "snmpsim>=1.1" "snmpsim-data>=1.0"
ENV CAMNET_LAB_CACHE=/var/lib/camnet/lab-cache
USER 10001:10001
ENTRYPOINT ["camnet"]
CMD ["lab"]

# The daemon (default target).
FROM runtime AS camnet
ENV CAMNET_HEALTHZ_URL=http://127.0.0.1:9830/healthz
USER 10001:10001
EXPOSE 9830
# slim has no curl: ask /healthz with the standard library (urlopen raises on non-2xx).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['CAMNET_HEALTHZ_URL'], timeout=4)"]
ENTRYPOINT ["camnet"]
CMD ["run", "--config", "/etc/camnet/camnet.yaml"]
