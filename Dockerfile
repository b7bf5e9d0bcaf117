FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY supervisor ./supervisor
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /var/lib/lane-supervisor lane \
    && mkdir -p /var/lib/lane-supervisor/metrics \
    && chown -R lane /var/lib/lane-supervisor
USER lane
ENTRYPOINT []
