module pyfunc.dev/e2e/knative/pause

go 1.23
