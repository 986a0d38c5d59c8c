# The correlator service image (docker-compose.yml builds it).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY correlator ./correlator
RUN pip install --no-cache-dir '.[telemetry]'
USER nobody
EXPOSE 8080
ENV CORRELATOR_SERVER_HOST=0.0.0.0 CORRELATOR_SERVER_PORT=8080
HEALTHCHECK --interval=10s --timeout=3s --retries=5 CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"
CMD ["correlator", "serve", "--host", "0.0.0.0", "--port", "8080"]
