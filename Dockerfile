# Artifact Vault container image.
#   docker build -t artifact-vault .
#   docker run -p 8080:8080 -v vault-cache:/var/lib/artifact-vault artifact-vault
# The image runs config-sample.yml; mount your own at /etc/artifact-vault/config.yml.
FROM python:3.11-slim

COPY requirements.txt /src/requirements.txt
RUN pip install --no-cache-dir -r /src/requirements.txt
COPY pyproject.toml README.md main.py /src/
COPY artifact_vault /src/artifact_vault
RUN pip install --no-cache-dir --no-deps /src \
    && useradd --system --home-dir /var/lib/artifact-vault artifact-vault \
    && install -d -o artifact-vault /var/lib/artifact-vault
COPY config-sample.yml /etc/artifact-vault/config.yml

USER artifact-vault
WORKDIR /var/lib/artifact-vault
VOLUME /var/lib/artifact-vault
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"
# waitress stops on SIGTERM; the cache survives any stop (commits are atomic).
ENTRYPOINT ["artifact-vault", "serve"]
CMD ["--config", "/etc/artifact-vault/config.yml"]
