# A function image without buildpacks: the base image plus your handler.
#   docker build -f image/function.Dockerfile -t my-fn path/to/function-dir
ARG BASE_IMAGE=pyfunc/base
FROM ${BASE_IMAGE}
COPY handler.py /workspace/
# The handler's bytecode in the image layer: the root is read-only at run time (and
# PYTHONDONTWRITEBYTECODE is set), so without it every cold start compiles handler.py again.
# checked-hash: layers do not keep mtimes. Exec form: the base image has no shell.
USER 0
RUN ["python", "-m", "compileall", "-q", "--invalidation-mode", "checked-hash", "/workspace"]
USER 1001:1001
