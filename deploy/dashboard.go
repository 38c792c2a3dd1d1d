// Package deploy holds the deployment files (systemd unit, Kubernetes
// DaemonSet, Dockerfile, log agents' configurations, Grafana dashboard)
// and what the tests need to read them.
package deploy

import (
	"encoding/json"
	"os"
	"strings"
)

// dashboardPanel is a panel of the Grafana dashboard; a row holds its
// panels when collapsed.
type dashboardPanel struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

// DashboardQueries returns the dashboard's queries by panel title, split
// into those for any Prometheus 2.x (classic buckets) and those of the
// native-histogram row, with Grafana's variables replaced for a direct
// query: $instance by ".*", $__rate_interval by rateInterval.
func DashboardQueries(path, rateInterval string) (classic, native map[string][]string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var d struct {
		Panels []dashboardPanel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, nil, err
	}
	classic, native = map[string][]string{}, map[string][]string{}
	r := strings.NewReplacer("$instance", ".*", "$__rate_interval", rateInterval)
	var walk func(ps []dashboardPanel, into map[string][]string)
	walk = func(ps []dashboardPanel, into map[string][]string) {
		for _, p := range ps {
			if p.Type == "row" {
				to := classic
				if strings.Contains(strings.ToLower(p.Title), "native") {
					to = native
				}
				walk(p.Panels, to)
				continue
			}
			for _, t := range p.Targets {
				into[p.Title] = append(into[p.Title], r.Replace(t.Expr))
			}
		}
	}
	walk(d.Panels, classic)
	return classic, native, nil
}
