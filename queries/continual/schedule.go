package continual

import (
	"fmt"

	"github.com/fedstat/fedstat/internal/cdm"
)

// Period lengths of a Schedule.
const (
	Day   = "day"
	Week  = "week"
	Month = "month"
)

// Schedule is the calendar of a series: periods of one day, of seven days,
// or of one calendar month, counted from Start (period 0).
type Schedule struct {
	// Every is the period length: Day, Week or Month. Required.
	Every string
	// Start is the first day of period 0. Required; for Month it must be
	// the first day of a month. A weekly series starts on any weekday
	// (Monday for ISO weeks, Sunday for MMWR weeks).
	Start cdm.Date
}

// Validate reports a schedule that Period and Bounds cannot use, with an
// error that says what to change.
func (s Schedule) Validate() error {
	if !s.Start.Valid() {
		return fmt.Errorf("%w: a series needs a start date", ErrInput)
	}
	switch s.Every {
	case Day, Week:
	case Month:
		if _, _, d := s.Start.Civil(); d != 1 {
			y, m, _ := s.Start.Civil()
			return fmt.Errorf("%w: a monthly series starts on the first day of a month, not %s (use %04d-%02d-01)", ErrInput, s.Start, y, m)
		}
	default:
		return fmt.Errorf("%w: period %q: want %q, %q or %q", ErrInput, s.Every, Day, Week, Month)
	}
	return nil
}

// Period returns the index of the period that holds day d: 0 for the
// period that starts at Start. It is -1 before Start, for a missing date
// and for a schedule that does not Validate.
func (s Schedule) Period(d cdm.Date) int {
	if !d.Valid() || d < s.Start || s.Validate() != nil {
		return -1
	}
	switch s.Every {
	case Day:
		return int(d - s.Start)
	case Week:
		return int(d-s.Start) / 7
	default:
		return d.Month() - s.Start.Month()
	}
}

// maxPeriod keeps Bounds inside cdm.Date's range: a million periods is
// 2,700 years of days.
const maxPeriod = 1_000_000

// Bounds returns the first and last day (inclusive) of period i. Both are
// cdm.NoDate for i < 0, i > 1,000,000 and for a schedule that does not
// Validate.
func (s Schedule) Bounds(i int) (first, last cdm.Date) {
	if i < 0 || i > maxPeriod || s.Validate() != nil {
		return cdm.NoDate, cdm.NoDate
	}
	switch s.Every {
	case Day:
		d := s.Start + cdm.Date(i)
		return d, d
	case Week:
		d := s.Start + cdm.Date(7*i)
		return d, d + 6
	default:
		m := s.Start.Month() + i
		return cdm.MonthStart(m), cdm.MonthStart(m+1) - 1
	}
}
