// Command otelcol-tcptrace is an OpenTelemetry Collector built with
// exactly the components deploy/logging/otelcol.yaml uses, and nothing
// else: the filelog receiver (tails the tracer's NDJSON), the file_storage
// extension (keeps its read offsets across restarts, and the exporter's
// queue), and the OTLP/gRPC exporter. The end-to-end test in this folder
// builds it and runs it against the real tracer; any collector
// distribution that has these three components (otelcol-contrib does) runs
// the same configuration.
//
// It lives in a Go module of its own so that the tracer's module does not
// carry the collector's dependencies: `go test ./...` at the repository's
// root does not enter this folder. The versions are pinned in go.mod, all
// collector modules at one release.
package main

import (
	"fmt"
	"os"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"github.com/open-telemetry/opentelemetry-collector-contrib/receiver/filelogreceiver"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/otlpexporter"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"
)

// version names the build; the collector modules' own release is in go.mod.
const version = "0.165.0-tcptrace"

// components are the factories of the components the configuration names.
func components() (otelcol.Factories, error) {
	var f otelcol.Factories
	var err error
	if f.Receivers, err = otelcol.MakeFactoryMap[receiver.Factory](filelogreceiver.NewFactory()); err != nil {
		return f, err
	}
	if f.Extensions, err = otelcol.MakeFactoryMap[extension.Factory](filestorage.NewFactory()); err != nil {
		return f, err
	}
	if f.Exporters, err = otelcol.MakeFactoryMap[exporter.Factory](otlpexporter.NewFactory()); err != nil {
		return f, err
	}
	f.Telemetry = otelconftelemetry.NewFactory()
	return f, nil
}

func main() {
	set := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{
			Command:     "otelcol-tcptrace",
			Description: "OpenTelemetry Collector for tcptrace-bpf's NDJSON (filelog, file_storage, OTLP)",
			Version:     version,
		},
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				// --config FILE (repeatable: later files merge over
				// earlier ones) and ${env:NAME} in the configuration.
				ProviderFactories: []confmap.ProviderFactory{fileprovider.NewFactory(), envprovider.NewFactory()},
				DefaultScheme:     "env",
			},
		},
	}
	if err := otelcol.NewCommand(set).Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "otelcol-tcptrace: %v\n", err)
		os.Exit(1)
	}
}
