package cdm

import (
	"testing"
	"time"
)

// TestCalendar checks the date arithmetic against the time package over
// three centuries: civil dates, week, month and year buckets and their
// starts, and ages.
func TestCalendar(t *testing.T) {
	for d := DateFromYMD(1850, 1, 1); d < DateFromYMD(2150, 1, 1); d++ {
		tm := d.Time()
		y, m, day := d.Civil()
		if y != tm.Year() || m != int(tm.Month()) || day != tm.Day() {
			t.Fatalf("%v: Civil %d-%d-%d", tm, y, m, day)
		}
		if d.Year() != y || d.Month() != y*12+m-1 || MonthStart(d.Month()) != DateFromYMD(y, time.Month(m), 1) {
			t.Fatalf("%v: year %d, month %d", tm, d.Year(), d.Month())
		}
		ws := WeekStart(d.Week())
		if ws.Time().Weekday() != time.Monday || d < ws || d-ws >= 7 {
			t.Fatalf("%v: week %d starts %v", tm, d.Week(), ws.Time())
		}
	}
	for _, c := range []struct {
		birth, at Date
		want      int
	}{
		{DateFromYMD(1970, 2, 3), DateFromYMD(2020, 2, 2), 49},
		{DateFromYMD(1970, 2, 3), DateFromYMD(2020, 2, 3), 50},
		{DateFromYMD(2000, 2, 29), DateFromYMD(2001, 2, 28), 0},
		{DateFromYMD(2000, 2, 29), DateFromYMD(2001, 3, 1), 1},
		{DateFromYMD(2020, 1, 2), DateFromYMD(2020, 1, 1), -1},
		{NoDate, DateFromYMD(2020, 1, 1), -1},
	} {
		if got := AgeAt(c.birth, c.at); got != c.want {
			t.Errorf("AgeAt(%v, %v) = %d, want %d", c.birth, c.at, got, c.want)
		}
	}
}
