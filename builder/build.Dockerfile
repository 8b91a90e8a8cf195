# pyfunc/build: the builder's build image. The full Debian root (bash for the buildpack, apt for
# users who need system packages) + the run image's venv, copied as is (same /usr/bin/python3,
# same packages) + the build tools in /opt/pip: pip and cyclonedx-bom from builder/requirements.lock.
# Build context: a directory holding `wheelhouse/` and `requirements.lock` (scripts/build-images.sh).
ARG ROOT_IMAGE=pyfunc/rootfs:bookworm
ARG RUN_IMAGE=pyfunc/base
FROM ${RUN_IMAGE} AS run

FROM ${ROOT_IMAGE} AS tools
COPY wheelhouse/ /wheelhouse/
COPY requirements.lock /requirements.lock
RUN set -eu; \
    python3 -m venv --without-pip /opt/pip; \
    /opt/pip/bin/python "$(ls /wheelhouse/pip-*.whl)/pip" install --no-index --find-links /wheelhouse \
        --no-cache-dir --disable-pip-version-check --require-hashes --only-binary :all: -r /requirements.lock; \
    /opt/pip/bin/pip check; \
    /opt/pip/bin/cyclonedx-py --version

FROM ${ROOT_IMAGE}
ARG DISTRO_NAME=debian
ARG DISTRO_VERSION=12
COPY --from=run /opt/pyfunc /opt/pyfunc
COPY --from=tools /opt/pip /opt/pip
# CNB build image contract: the build user (uid 1000; the run image's user is 1001, so a function
# cannot write its own files), its ids in the env, a writable home, PATH. The lifecycle passes
# buildpacks only PATH and a few others: pip and cyclonedx-py are found on PATH, after the runtime
# venv so that `python` stays /opt/pyfunc/bin/python.
RUN useradd --uid 1000 --user-group --no-log-init --create-home --home-dir /home/cnb cnb
ENV CNB_USER_ID=1000 CNB_GROUP_ID=1000 \
    PATH=/opt/pyfunc/bin:/opt/pip/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
LABEL io.buildpacks.base.id="io.pyfunc.build" \
      io.buildpacks.base.maintainer="The pyfunc authors" \
      io.buildpacks.base.distro.name="${DISTRO_NAME}" \
      io.buildpacks.base.distro.version="${DISTRO_VERSION}"
USER 1000:1000
WORKDIR /home/cnb
