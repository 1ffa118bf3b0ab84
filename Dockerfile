# Artifact Vault container image: deploy/install.sh (the tested install) on a slim Python.
#   docker build -t artifact-vault .
#   docker run -p 8080:8080 -v vault-cache:/var/cache/artifact-vault artifact-vault
#   docker run ... -v $PWD/config.yml:/etc/artifact-vault/config.yml:ro artifact-vault
# The config is /etc/artifact-vault/config.yml (config-sample.yml with cache_dir set to the
# volume), or any path named by ARTIFACT_VAULT_CONFIG.
FROM python:3.11-slim

COPY requirements.txt pyproject.toml README.md main.py /src/
COPY artifact_vault /src/artifact_vault
COPY deploy/install.sh /src/deploy/install.sh
RUN /src/deploy/install.sh /opt/artifact-vault \
    && rm -rf /src \
    && useradd --system --no-create-home --home-dir /var/cache/artifact-vault artifact-vault \
    && install -d -o artifact-vault /var/cache/artifact-vault
COPY config-sample.yml /etc/artifact-vault/config.yml
RUN sed -i 's#^cache_dir: .*#cache_dir: /var/cache/artifact-vault#' /etc/artifact-vault/config.yml

ENV PATH=/opt/artifact-vault/bin:$PATH \
    ARTIFACT_VAULT_CONFIG=/etc/artifact-vault/config.yml
USER artifact-vault
WORKDIR /var/cache/artifact-vault
VOLUME /var/cache/artifact-vault
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"
# SIGTERM: finish responses in progress (stop_timeout), then exit; docker stop waits 10s by
# default, so run with --stop-timeout 30 to give downloads their full time.
STOPSIGNAL SIGTERM
ENTRYPOINT ["artifact-vault", "serve"]
