package warehouse

import (
	"math"
	"testing"
)

// TestClickHouseNonFinite: a NaN or an infinity is written as ClickHouse
// spells it, in an SQL literal (chValue) and in a TabSeparated field (chTSV)
// alike; a finite float is not.
func TestClickHouseNonFinite(t *testing.T) {
	for v, want := range map[float64]string{math.Inf(1): "inf", math.Inf(-1): "-inf"} {
		if got, err := chValue(v); err != nil || got != want {
			t.Errorf("chValue(%v) = %q, %v; want %q", v, got, err, want)
		}
		if got, err := chTSV(v, "value_as_number"); err != nil || got != want {
			t.Errorf("chTSV(%v) = %q, %v; want %q", v, got, err, want)
		}
	}
	if got, err := chValue(math.NaN()); err != nil || got != "nan" {
		t.Errorf("chValue(NaN) = %q, %v", got, err)
	}
	if got, err := chTSV(math.NaN(), "value_as_number"); err != nil || got != "nan" {
		t.Errorf("chTSV(NaN) = %q, %v", got, err)
	}
	if got, err := chTSV(1.5, "value_as_number"); err != nil || got != "1.5" {
		t.Errorf("chTSV(1.5) = %q, %v", got, err)
	}
	if got, err := chValue(1.5); err != nil || got == "nan" || got == "inf" {
		t.Errorf("chValue(1.5) = %q, %v", got, err)
	}
}
