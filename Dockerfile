# One image for every Ledgerline process: `serve`, `project`, `db init`, `create-admin`, `audit`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain domain
COPY eventstore eventstore
COPY projections projections
COPY api api
COPY ledgerline ledgerline
# The image's user owns its data directory (the SQLite default, its generated secret, the hashing
# slots' lock files, the metrics of several workers); /app stays root's and read-only to it.
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/ledgerline --no-create-home \
        --shell /usr/sbin/nologin ledgerline \
    && install -d -o ledgerline -g ledgerline -m 0750 /var/lib/ledgerline
ENV LEDGERLINE_HOST=0.0.0.0 \
    LEDGERLINE_DATA_DIR=/var/lib/ledgerline \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/ledgerline"]
USER 10001:10001
EXPOSE 8000
# No HEALTHCHECK here: the image also runs the projector and one-shot commands; docker-compose.yml
# gives the API its own, on /ready.
ENTRYPOINT ["ledgerline"]
CMD ["serve"]
