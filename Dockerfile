# The correlator service image (docker-compose.yml builds it).

# The native extension (native/: the per-log-line loop, Rust via PyO3) as a wheel for CPython 3.11.
# Bookworm's python3 is 3.11, the final image's glibc is the same or newer. Without it the service
# would run the same code in Python (docs/performance-native.md), only slower.
FROM rust:1-slim-bookworm AS native
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/maturin && /opt/maturin/bin/pip install --no-cache-dir 'maturin>=1.5,<2'
COPY native /native
RUN /opt/maturin/bin/maturin build --release --manifest-path /native/Cargo.toml --interpreter python3.11 --out /wheels

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY correlator ./correlator
RUN --mount=type=bind,from=native,source=/wheels,target=/wheels pip install --no-cache-dir '.[telemetry]' /wheels/*.whl
USER nobody
EXPOSE 8080
ENV CORRELATOR_SERVER_HOST=0.0.0.0 CORRELATOR_SERVER_PORT=8080
HEALTHCHECK --interval=10s --timeout=3s --retries=5 CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"
CMD ["correlator", "serve", "--host", "0.0.0.0", "--port", "8080"]
