//go:build !linux

package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
)

// Tracing, top and demo load eBPF programs into a Linux kernel; on other
// systems only the offline commands (analyze, report) work.

func needsLinux(what string, stderr io.Writer) int {
	fmt.Fprintf(stderr, "tcptrace-bpf: %s needs Linux (this is %s); analyze and report read recordings here\n", what, runtime.GOOS)
	return 1
}

func trace(_ config.Config, _, stderr io.Writer) int { return needsLinux("tracing", stderr) }

func runTop(_ []string, _, stderr io.Writer) int { return needsLinux("top", stderr) }

func runIncident(_ []string, _, stderr io.Writer) int { return needsLinux("incident", stderr) }

func runDemo(_ []string, _, stderr io.Writer) int { return needsLinux("demo", stderr) }

func runRole([]string) {}

func kernelFeatures() []string { return []string{"tracing needs Linux"} }

func selfNetns() (uint32, error) { return 0, fmt.Errorf("network namespaces are Linux's") }
