package continual_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/continual"
)

func day(s string) cdm.Date {
	d, err := cdm.ParseDate(s)
	if err != nil {
		panic(err)
	}
	return d
}

// TestSchedule: periods of days, weeks from any weekday, and calendar
// months (across a year end and a leap February); Period and Bounds are
// inverse; dates before the start are -1.
func TestSchedule(t *testing.T) {
	cases := []struct {
		s           continual.Schedule
		date        string
		period      int
		first, last string
	}{
		{continual.Schedule{continual.Day, day("2024-02-27")}, "2024-02-27", 0, "2024-02-27", "2024-02-27"},
		{continual.Schedule{continual.Day, day("2024-02-27")}, "2024-03-01", 3, "2024-03-01", "2024-03-01"},
		// MMWR weeks start on Sunday: 2024-09-29 is a Sunday.
		{continual.Schedule{continual.Week, day("2024-09-29")}, "2024-09-29", 0, "2024-09-29", "2024-10-05"},
		{continual.Schedule{continual.Week, day("2024-09-29")}, "2024-10-05", 0, "2024-09-29", "2024-10-05"},
		{continual.Schedule{continual.Week, day("2024-09-29")}, "2024-10-06", 1, "2024-10-06", "2024-10-12"},
		{continual.Schedule{continual.Week, day("2024-09-29")}, "2025-01-01", 13, "2024-12-29", "2025-01-04"},
		{continual.Schedule{continual.Month, day("2023-11-01")}, "2023-11-30", 0, "2023-11-01", "2023-11-30"},
		{continual.Schedule{continual.Month, day("2023-11-01")}, "2024-01-15", 2, "2024-01-01", "2024-01-31"},
		{continual.Schedule{continual.Month, day("2023-11-01")}, "2024-02-29", 3, "2024-02-01", "2024-02-29"},
		{continual.Schedule{continual.Month, day("2023-11-01")}, "2025-02-28", 15, "2025-02-01", "2025-02-28"},
	}
	for _, c := range cases {
		if err := c.s.Validate(); err != nil {
			t.Fatal(err)
		}
		if got := c.s.Period(day(c.date)); got != c.period {
			t.Errorf("%+v: Period(%s) = %d, want %d", c.s, c.date, got, c.period)
		}
		f, l := c.s.Bounds(c.period)
		if f.String() != c.first || l.String() != c.last {
			t.Errorf("%+v: Bounds(%d) = %s..%s, want %s..%s", c.s, c.period, f, l, c.first, c.last)
		}
	}
	for _, s := range []continual.Schedule{
		{continual.Day, day("2024-01-01")}, {continual.Week, day("2024-01-03")}, {continual.Month, day("2024-01-01")},
	} {
		if s.Period(s.Start-1) != -1 || s.Period(cdm.NoDate) != -1 {
			t.Errorf("%+v: a date before the start is not -1", s)
		}
		if f, l := s.Bounds(-1); f.Valid() || l.Valid() {
			t.Errorf("%+v: Bounds(-1) = %s..%s", s, f, l)
		}
		// Consecutive periods tile the calendar, each day in its period.
		prevLast := s.Start - 1
		for i := range 400 {
			f, l := s.Bounds(i)
			if f != prevLast+1 || l < f {
				t.Fatalf("%+v: period %d is %s..%s after %s", s, i, f, l, prevLast)
			}
			for d := f; d <= l; d++ {
				if s.Period(d) != i {
					t.Fatalf("%+v: Period(%s) = %d, want %d", s, d, s.Period(d), i)
				}
			}
			prevLast = l
		}
	}
}

func TestScheduleValidate(t *testing.T) {
	for _, c := range []struct {
		s    continual.Schedule
		want string
	}{
		{continual.Schedule{continual.Month, day("2024-01-15")}, "use 2024-01-01"},
		{continual.Schedule{"fortnight", day("2024-01-01")}, `"fortnight"`},
		{continual.Schedule{"", day("2024-01-01")}, `want "day"`},
		{continual.Schedule{continual.Week, cdm.NoDate}, "start date"},
	} {
		err := c.s.Validate()
		if !errors.Is(err, continual.ErrInput) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want ErrInput naming %q", c.s, err, c.want)
		}
		if c.s.Period(day("2024-06-01")) != -1 {
			t.Errorf("%+v: an invalid schedule gives a period", c.s)
		}
		if f, _ := c.s.Bounds(0); f.Valid() {
			t.Errorf("%+v: an invalid schedule gives bounds", c.s)
		}
	}
}
