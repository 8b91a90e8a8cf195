// kn-validate: what Knative Serving's admission webhook does to a serving.knative.dev/v1 Service
// (SetDefaults, then Validate, with the default config-defaults / config-features), run offline on
// YAML files. Exits 1 with Knative's own message when a Service is invalid; its warnings (which
// kubectl prints but applies anyway) go to stderr as `warning: …`.
//
// With -pod it also prints, as JSON, the pod spec Knative's reconcilers make for the Service's first
// Revision (MakeConfiguration -> MakeRevision -> MakeDeployment): the user container as Knative runs
// it and the queue-proxy sidecar with the environment it gets.
//
//	kn-validate [-pod] FILE...
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"time"

	netcfg "knative.dev/networking/pkg/config"
	"knative.dev/pkg/apis"
	"knative.dev/pkg/logging"
	"knative.dev/pkg/metrics"
	pkgtracing "knative.dev/pkg/tracing/config"
	apiconfig "knative.dev/serving/pkg/apis/config"
	v1 "knative.dev/serving/pkg/apis/serving/v1"
	"knative.dev/serving/pkg/deployment"
	cfgresources "knative.dev/serving/pkg/reconciler/configuration/resources"
	revconfig "knative.dev/serving/pkg/reconciler/revision/config"
	revresources "knative.dev/serving/pkg/reconciler/revision/resources"
	svcresources "knative.dev/serving/pkg/reconciler/service/resources"
	"sigs.k8s.io/yaml"
)

func must[T any](v T, err error) T {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(2)
	}
	return v
}

func main() {
	pod := flag.Bool("pod", false, "print the pod spec (user container + queue-proxy) of the first Revision as JSON")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: kn-validate [-pod] FILE...")
		os.Exit(2)
	}
	if os.Getenv("SYSTEM_NAMESPACE") == "" {
		os.Setenv("SYSTEM_NAMESPACE", "knative-serving")
	}
	// The configs a fresh Knative install has: every ConfigMap at its defaults.
	api := &apiconfig.Config{
		Defaults: must(apiconfig.NewDefaultsConfigFromMap(nil)),
		Features: must(apiconfig.NewFeaturesConfigFromMap(nil)),
	}
	ctx := apiconfig.ToContext(context.Background(), api)

	failed := false
	var pods []any
	for _, path := range flag.Args() {
		data := must(os.ReadFile(path))
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
			if len(bytes.TrimSpace([]byte(doc))) == 0 {
				continue
			}
			where := fmt.Sprintf("%s (document %d)", path, i+1)
			svc := &v1.Service{}
			// Strict, as `kubectl apply` (field validation Strict) is: unknown fields are errors.
			if err := yaml.UnmarshalStrict([]byte(doc), svc); err != nil {
				fmt.Fprintf(os.Stderr, "invalid: %s: %v\n", where, err)
				failed = true
				continue
			}
			if svc.APIVersion != "serving.knative.dev/v1" || svc.Kind != "Service" {
				fmt.Fprintf(os.Stderr, "invalid: %s: not a serving.knative.dev/v1 Service (%s %s)\n", where, svc.APIVersion, svc.Kind)
				failed = true
				continue
			}
			if svc.Namespace == "" {
				svc.Namespace = "default" // kubectl apply fills it in before the webhook sees it
			}
			// The webhook: defaulting, then validation of a create.
			svc.SetDefaults(ctx)
			// Errors reject the Service; warnings are what kubectl prints and still applies.
			result := svc.Validate(apis.WithinCreate(ctx))
			if warn := result.Filter(apis.WarningLevel); warn != nil {
				fmt.Fprintf(os.Stderr, "warning: %s: %s\n", where, warn.Error())
			}
			if err := result.Filter(apis.ErrorLevel); err != nil {
				fmt.Fprintf(os.Stderr, "invalid: %s: %s\n", where, err.Error())
				failed = true
				continue
			}
			fmt.Printf("ok: %s: Service %s\n", where, svc.Name)
			if *pod {
				pods = append(pods, podOf(ctx, api, svc))
			}
		}
	}
	if *pod && !failed {
		out := must(json.MarshalIndent(pods, "", "  "))
		fmt.Fprintln(os.Stderr, "pod specs follow on stdout after a line with ---")
		fmt.Println("---")
		fmt.Println(string(out))
	}
	if failed {
		os.Exit(1)
	}
}

// podOf: the Deployment's pod template Knative's reconcilers make for the Service's first Revision.
func podOf(ctx context.Context, api *apiconfig.Config, svc *v1.Service) any {
	cfg := svcresources.MakeConfiguration(svc)
	rev := cfgresources.MakeRevision(ctx, cfg, time.Now())
	rev.Name = cfg.Name + "-00001"
	rev.SetDefaults(ctx)
	dep := must(deployment.NewConfigFromMap(map[string]string{"queue-sidecar-image": "queue-proxy"}))
	rc := &revconfig.Config{
		Config:        api,
		Deployment:    dep,
		Logging:       must(logging.NewConfigFromMap(nil)),
		Network:       must(netcfg.NewConfigFromMap(nil)),
		Observability: must(metrics.NewObservabilityConfigFromConfigMap(nil)),
		Tracing:       must(pkgtracing.NewTracingConfigFromMap(nil)),
	}
	d := must(revresources.MakeDeployment(rev, rc))
	return map[string]any{"service": svc.Name, "revision": rev.Name, "pod": d.Spec.Template.Spec}
}
