package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Sum returns the total of a counter or gauge family in g, and its values
// by the given label (when label is not empty).
func Sum(g prometheus.Gatherer, name, label string) (float64, map[string]float64) {
	fams, err := g.Gather()
	if err != nil {
		return 0, nil
	}
	var total float64
	by := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			total += v
			if label == "" {
				continue
			}
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label {
					by[lp.GetValue()] += v
				}
			}
		}
	}
	return total, by
}
