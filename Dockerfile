FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY supervisor ./supervisor
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT []
