# syntax=docker/dockerfile:1
# Build a wheel (templates included), then install it into a slim runtime image.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY templates ./templates
# With the [fast] extra: uvloop and httptools, which `newsletter serve` then uses.
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[fast]'

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NEWSLETTER_HOST=0.0.0.0 \
    NEWSLETTER_PORT=8000 \
    NEWSLETTER_DATABASE_URL=sqlite:////data/newsletter.db
RUN useradd --system --uid 10001 --home-dir /data --create-home newsletter
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER newsletter
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('NEWSLETTER_PORT', '8000')}/healthz\", timeout=4)"]
# On SQLite (the /data volume) `serve` migrates the schema itself
# (NEWSLETTER_MIGRATE_ON_START=auto). With PostgreSQL, run this image once per release as
# `newsletter migrate` before the new containers start; they refuse an older schema.
CMD ["newsletter", "serve"]
