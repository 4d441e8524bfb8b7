# The omnistitch image used by docker-compose.yml (topic set-up, worker, connectors).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY connectors ./connectors
COPY schemas ./schemas
RUN pip install --no-cache-dir .
ENV OMNISTITCH_SCHEMAS_DIR=/app/schemas \
    OMNISTITCH_DATA_DIR=/data
ENTRYPOINT ["omnistitch"]
