# The lock is resolved on CPython 3.11 (./dev lock): the image uses the same minor version.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
COPY supervisor ./supervisor
# Only what the lock pins, every file checked against its hash; then the project itself, built
# with the locked setuptools (no build isolation: nothing is fetched unlocked).
RUN pip install --no-cache-dir --disable-pip-version-check --require-hashes --no-deps \
        -r requirements.lock \
    && pip install --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation . \
    && useradd --system --uid 10001 --home-dir /var/lib/lane-supervisor lane \
    && mkdir -p /var/lib/lane-supervisor/metrics \
    && chown -R lane /var/lib/lane-supervisor
USER lane
ENTRYPOINT []
