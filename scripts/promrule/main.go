// Command promrule is scripts/test-alerts.sh's helper: it writes the rule
// groups of a Prometheus Operator PrometheusRule manifest as a Prometheus
// rule file, for promtool to check and test.
//
//	promrule deploy/k8s/prometheusrule.yaml > rules.yml
package main

import (
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: promrule PROMETHEUSRULE.yaml > rules.yml")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "promrule:", err)
		os.Exit(1)
	}
}

func run(file string) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var pr struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Groups yaml.Node `yaml:"groups"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(raw, &pr); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if pr.Kind != "PrometheusRule" || pr.Spec.Groups.Kind != yaml.SequenceNode {
		return fmt.Errorf("%s: kind %q: not a PrometheusRule with spec.groups", file, pr.Kind)
	}
	out, err := yaml.Marshal(map[string]*yaml.Node{"groups": &pr.Spec.Groups})
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}
