# The control plane's image: one image, the component chosen by the command (serve, worker,
# scheduler, metrics, migrate). Not built in CI (no image registry is reachable there); see
# README "Operations". Build: docker build -t chutian/controlplane:0.1.0 .
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY controlplane controlplane
COPY quotas quotas
COPY backup backup
COPY provisioners provisioners
RUN python -m venv /opt/chutian \
 && /opt/chutian/bin/pip install '.[openstack,kubernetes,ansible]'

FROM python:3.11-slim-bookworm
# restic for DR backups; tini reaps the Celery prefork children.
RUN apt-get update \
 && apt-get install -y --no-install-recommends restic tini ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 chutian \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin chutian
COPY --from=build /opt/chutian /opt/chutian
# provisioners/ansible.py looks for playbooks/ beside its package (site-packages/playbooks)
COPY playbooks /opt/chutian/lib/python3.11/site-packages/playbooks
ENV PATH=/opt/chutian/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp \
    CHUTIAN_DATA_DIR=/var/lib/chutian
# Runs with a read-only root filesystem: /tmp and the data dir are emptyDir volumes in the chart.
USER 10001:10001
EXPOSE 8000 9464
ENTRYPOINT ["/usr/bin/tini", "--", "chutian"]
CMD ["serve", "--no-worker", "--host", "0.0.0.0"]
