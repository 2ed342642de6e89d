// Command cert-manager-ca is a minimal cert-manager controller for the test bed: it issues
// Certificates from CA Issuers only. cert-manager's cmd/controller module is not served by the
// Go module proxy, so this wires the main module's public packages (pkg/controller and the
// controllers that register themselves there) instead. No leader election, webhook or ACME.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"

	// Each blank import registers its controller with controllerpkg (init functions).
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	// Registers the CA issuer type that the issuers controller checks.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
)

// The control loops a Certificate from a CA Issuer goes through, by their registered names.
var controllerNames = []string{
	"issuers",
	"certificates-trigger",
	"certificates-key-manager",
	"certificates-request-manager",
	"certificates-readiness",
	"certificates-issuing",
	"certificates-revision-manager",
	"certificaterequests-approver",
	"certificaterequests-issuer-ca",
}

const workersPerController = 2

func main() {
	kubeconfig := flag.String("kubeconfig", "", "path to a kubeconfig (empty: in-cluster config)")
	namespace := flag.String("namespace", "", "namespace to watch (empty: all namespaces)")
	flag.Parse()

	logf.InitLogs()
	defer logf.FlushLogs()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = logf.NewContext(ctx, logf.Log, "cert-manager-ca")

	if err := run(ctx, *kubeconfig, *namespace); err != nil {
		fmt.Fprintln(os.Stderr, "cert-manager-ca:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, kubeconfig, namespace string) error {
	factory, err := controllerpkg.NewContextFactory(ctx, contextOptions(kubeconfig, namespace))
	if err != nil {
		return err
	}
	controllers, err := buildControllers(factory)
	if err != nil {
		return err
	}
	// Constructors register the informers they need; start them only once all are built.
	if err := startInformers(ctx, factory); err != nil {
		return err
	}
	return runControllers(ctx, controllers)
}

func contextOptions(kubeconfig, namespace string) controllerpkg.ContextOptions {
	return controllerpkg.ContextOptions{
		Kubeconfig:         kubeconfig,
		Namespace:          namespace,
		KubernetesAPIQPS:   20,
		KubernetesAPIBurst: 50,
		IssuerOptions:      controllerpkg.IssuerOptions{ClusterResourceNamespace: "cert-manager"},
		// cert-manager's documented defaults for a failed request's retry backoff.
		CertificateOptions: controllerpkg.CertificateOptions{
			CertificateRequestMinimumBackoffDuration: time.Hour,
			CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
		},
	}
}

func buildControllers(factory *controllerpkg.ContextFactory) (map[string]controllerpkg.Interface, error) {
	known := controllerpkg.Known()
	controllers := make(map[string]controllerpkg.Interface, len(controllerNames))
	for _, name := range controllerNames {
		construct, ok := known[name]
		if !ok {
			return nil, fmt.Errorf("controller %q is not registered", name)
		}
		controller, err := construct(factory)
		if err != nil {
			return nil, fmt.Errorf("building controller %q: %w", name, err)
		}
		controllers[name] = controller
	}
	return controllers, nil
}

func startInformers(ctx context.Context, factory *controllerpkg.ContextFactory) error {
	shared, err := factory.Build()
	if err != nil {
		return err
	}
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	shared.SharedInformerFactory.Start(ctx.Done())
	return nil
}

func runControllers(ctx context.Context, controllers map[string]controllerpkg.Interface) error {
	log := logf.FromContext(ctx)
	errs := make(chan error, len(controllers))
	var wg sync.WaitGroup
	for name, controller := range controllers {
		wg.Go(func() {
			log.Info("starting controller", "controller", name)
			if err := controller.Run(workersPerController, ctx); err != nil {
				errs <- fmt.Errorf("controller %q: %w", name, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}
