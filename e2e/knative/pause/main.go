// kn-pause: the e2e's stand-in for a pod's pause container. It holds the pod's network namespace
// (the function and queue-proxy containers join it with `docker run --network container:…`) and
// does nothing until SIGTERM/SIGINT, as k8s's pause does.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
