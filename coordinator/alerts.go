package coordinator

import (
	"context"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/fedstat/fedstat/internal/webhook"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	"github.com/fedstat/fedstat/queries/stats"
)

// Alerts of standing series: after each released period the coordinator
// runs the series' rules on its period estimates, per label (post-processing
// of released values, no budget). EARS C1, C2 and C3 (queries/stats.EARS,
// corrected for the known noise variance) and the forecast rule (the upper
// 90% quantile of next period's forecast above the rule's threshold). An
// alert names the series, the period (its first day), the label, the value
// and the rule; it is kept with the series, shown by the API and the
// dashboard, logged, recorded in the audit log and POSTed to AlertWebhook.

// labelSeries is the released period values of one label up to period t,
// as stats.Series (estimates and their variances).
func (r *seriesRecord) labelSeries(periods []*coordinatorv1.SeriesPeriod, li, t int) *stats.Series {
	s := &stats.Series{}
	for i := 0; i <= t && i < len(periods); i++ {
		if li >= len(periods[i].Values) {
			return s
		}
		v := periods[i].Values[li]
		s.Labels = append(s.Labels, periods[i].First)
		s.Counts = append(s.Counts, stats.Noisy{Value: v.Value, Var: v.Variance})
	}
	return s
}

// checkAlerts runs the rules for period t and records what fires (callers
// hold series.mu).
func (c *Coordinator) checkAlerts(r *seriesRecord, t int) []alertRecord {
	periods := r.estimates()
	now := c.cfg.Now().UnixMilli()
	var fired []alertRecord
	for li, label := range r.Labels {
		s := r.labelSeries(periods, li, t)
		if len(s.Counts) != t+1 {
			continue
		}
		for _, rule := range r.Rules {
			var a *alertRecord
			switch rule.Rule {
			case "C1", "C2", "C3":
				res, err := stats.EARS(s, rule.Rule)
				if err != nil || len(res) == 0 {
					continue
				}
				last := res[len(res)-1]
				if last.Label != s.Labels[t] || !last.Fired {
					continue
				}
				a = &alertRecord{Period: t, Label: label, Value: last.Count, Rule: "EARS " + rule.Rule, Statistic: last.Statistic, Threshold: last.Threshold, Fired: now}
			case "forecast":
				upper, ok := c.forecastUpper(r, s)
				if !ok || !(upper > rule.Threshold) {
					continue
				}
				a = &alertRecord{Period: t, Label: label, Value: s.Counts[t].Value, Rule: "forecast", Statistic: upper, Threshold: rule.Threshold, Fired: now}
			}
			if a != nil {
				r.Alerts = append(r.Alerts, *a)
				fired = append(fired, *a)
			}
		}
	}
	return fired
}

// notifyAlert logs, records and POSTs an alert.
func (c *Coordinator) notifyAlert(ctx context.Context, r *seriesRecord, a alertRecord) {
	first, _ := r.sched.Bounds(a.Period)
	msg := &coordinatorv1.SeriesAlert{Series: r.spec.GetName(), Period: int32(a.Period), Week: first.String(), Label: a.Label,
		Value: a.Value, Rule: a.Rule, Statistic: a.Statistic, Threshold: a.Threshold, FiredUnixMs: a.Fired}
	c.log.Warn("series alert", "series", msg.Series, "week", msg.Week, "label", msg.Label, "value", msg.Value, "rule", msg.Rule, "statistic", msg.Statistic)
	c.record(ctx, c.cfg.Identity.Name(), "series.alert", "", map[string]any{"series": msg.Series, "week": msg.Week, "label": msg.Label,
		"value": msg.Value, "rule": msg.Rule, "statistic": msg.Statistic, "threshold": msg.Threshold})
	if c.cfg.AlertWebhook == "" {
		return
	}
	body, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(msg)
	if err != nil {
		return
	}
	if err := webhook.PostJSON(ctx, c.cfg.AlertWebhook, body); err != nil {
		c.log.Error("could not deliver a series alert to the webhook", "series", msg.Series, "week", msg.Week, "err", err)
	}
}
