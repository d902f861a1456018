FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain domain
COPY eventstore eventstore
COPY projections projections
COPY api api
COPY ledgerline ledgerline
RUN pip install --no-cache-dir . && useradd --create-home ledgerline
USER ledgerline
ENV LEDGERLINE_HOST=0.0.0.0
EXPOSE 8000
ENTRYPOINT ["ledgerline"]
CMD ["serve"]
