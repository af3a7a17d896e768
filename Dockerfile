# spamd in a container: `spamd run` as a non-root user.
#
#   docker build -t spamd .
#   docker run -d --name spamd \
#     -v /srv/spamd/spamd.yaml:/etc/spamd/spamd.yaml:ro \
#     -v spamd-state:/var/lib/spamd spamd
#
# The configuration must say `state_dir: /var/lib/spamd`. The health check asks
# the HTTP listener, so configure it (`http: {listen: "127.0.0.1:8025"}`, or set
# SPAMD_HEALTHZ to where it listens; to publish the port, listen on 0.0.0.0
# with a token). /healthz needs no token.

FROM python:3.11-slim-bookworm AS build
# Where pip finds spamd's dependencies: PyPI, unless a build names a mirror
# (--build-arg PIP_INDEX_URL=...) or a wheelhouse (PIP_FIND_LINKS=..., PIP_NO_INDEX=1).
ARG PIP_INDEX_URL PIP_FIND_LINKS PIP_NO_INDEX
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY spamd ./spamd
# The wheel carries the model and the samples (pyproject.toml's package-dir).
COPY models ./models
COPY samples ./samples
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install . \
    && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="spamd" \
      org.opencontainers.image.description="IMAP spam filter that learns from the folders users drag mail into"
RUN groupadd --system --gid 10025 spamd \
    && useradd --system --uid 10025 --gid spamd --home-dir /var/lib/spamd --shell /usr/sbin/nologin spamd \
    && mkdir -p /etc/spamd /var/lib/spamd \
    && chown spamd:spamd /var/lib/spamd \
    && chmod 0700 /var/lib/spamd
COPY --from=build /opt/venv /opt/venv
# SPAMD_HEALTHZ: where the health check asks; change it with the listener's port.
# The model is the one the wheel carries (spamd/models in the venv).
ENV PATH=/opt/venv/bin:$PATH \
    SPAMD_HEALTHZ=http://127.0.0.1:8025/healthz \
    PYTHONUNBUFFERED=1
USER 10025:10025
VOLUME ["/var/lib/spamd"]
EXPOSE 8025
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as u; sys.exit(u.urlopen(os.environ['SPAMD_HEALTHZ'], timeout=4).status != 200)"]
ENTRYPOINT ["spamd"]
CMD ["run", "--config", "/etc/spamd/spamd.yaml"]
