# syntax=docker/dockerfile:1
# One image for every Warden process; the command picks the role:
#   web      gunicorn -c config/gunicorn.py config.wsgi          (the default CMD)
#   worker   celery -A config worker --pool threads --concurrency 16
#   beat     celery -A config beat                               (exactly one)
#   migrate  python manage.py migrate --noinput                  (once per release)
# Build: docker build -t warden:0.1.0 .   (see README, "Deploying for real")

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: compile python-ldap against OpenLDAP's headers; nothing of this stage ships ---------
FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential libldap2-dev libsasl2-dev \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
# The runtime dependencies exactly as pyproject.toml pins them (the app itself runs from /app).
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && python -m venv /opt/warden \
    && /opt/warden/bin/pip install -r requirements.txt

# --- runtime: slim, the OpenLDAP client libraries only, non-root, read-only friendly ------------
FROM ${PYTHON_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends libldap-2.5-0 libsasl2-2 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 warden \
    && useradd --system --uid 10001 --gid warden --home-dir /app --shell /usr/sbin/nologin warden
COPY --from=build /opt/warden /opt/warden
ENV PATH=/opt/warden/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=config.settings \
    WARDEN_VAR_DIR=/tmp/warden \
    STATIC_ROOT=/app/staticfiles \
    WHITENOISE_USE_FINDERS=0
WORKDIR /app
COPY manage.py ./
COPY config ./config
COPY core ./core
COPY access ./access
COPY clusters ./clusters
COPY ascode ./ascode
COPY templates ./templates
COPY static ./static
# Static files are collected into the image (WhiteNoise serves them with far-future headers).
# DEBUG=1 only lets settings load without the production secrets, which the build never has.
RUN DEBUG=1 python manage.py collectstatic --noinput --verbosity 0 \
    && python -m compileall -q config core access clusters ascode
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["gunicorn", "--config", "config/gunicorn.py", "config.wsgi"]
