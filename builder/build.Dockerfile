# pyfunc/build: the builder's build image = pyfunc/base (same /usr/bin/python3, same venv) + pip.
# Build context: the directory holding wheelhouse/ (see scripts/build-images.sh).
ARG BASE_IMAGE=pyfunc/base
FROM ${BASE_IMAGE} AS pip
USER root
COPY wheelhouse/ /wheelhouse/
RUN set -eu; pip_whl="$(ls /wheelhouse/pip-*.whl)"; \
    python -m venv --without-pip /opt/pip; \
    /opt/pip/bin/python "$pip_whl/pip" install --no-index --no-cache-dir --disable-pip-version-check "$pip_whl"

FROM ${BASE_IMAGE}
COPY --from=pip /opt/pip /opt/pip
# CNB build image contract: the build user, its ids in the env, a writable home, PATH.
# The lifecycle passes buildpacks only PATH and a few others: pip is found on PATH, after the
# runtime venv so that `python` stays /opt/pyfunc/bin/python.
ENV CNB_USER_ID=1000 CNB_GROUP_ID=1000 \
    PATH=/opt/pyfunc/bin:/opt/pip/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT []
