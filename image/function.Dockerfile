# A function image without buildpacks: the base image plus your handler.
#   docker build -f image/function.Dockerfile -t my-fn path/to/function-dir
ARG BASE_IMAGE=pyfunc/base
FROM ${BASE_IMAGE}
COPY handler.py /workspace/
