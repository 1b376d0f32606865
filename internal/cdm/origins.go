package cdm

// Origins holds where each record of a Records came from: Origins.Conditions[i]
// is the origin of Records.Conditions[i], and so on. Importers fill both in
// step so that errors found later (an unknown patient) can still name the
// file and line.
type Origins struct {
	Patients     []Origin
	Conditions   []Origin
	Observations []Origin
	Encounters   []Origin
	Medications  []Origin
}

// Append adds all origins of o.
func (g *Origins) Append(o *Origins) {
	g.Patients = append(g.Patients, o.Patients...)
	g.Conditions = append(g.Conditions, o.Conditions...)
	g.Observations = append(g.Observations, o.Observations...)
	g.Encounters = append(g.Encounters, o.Encounters...)
	g.Medications = append(g.Medications, o.Medications...)
}

// TableCounts returns the number of records per CDM table name.
func (r *Records) TableCounts() map[string]int {
	return map[string]int{
		TablePatients:     len(r.Patients),
		TableConditions:   len(r.Conditions),
		TableObservations: len(r.Observations),
		TableEncounters:   len(r.Encounters),
		TableMedications:  len(r.Medications),
	}
}

// FilterPatients returns the records whose patient satisfies keep (patients
// by their id, other records by their patient id), with their origins when
// o is not nil. Neither input is modified.
func (r *Records) FilterPatients(o *Origins, keep func(patientID string) bool) (*Records, *Origins) {
	out, oo := &Records{}, &Origins{}
	for i := range r.Patients {
		if keep(r.Patients[i].ID) {
			out.Patients = append(out.Patients, r.Patients[i])
			if o != nil {
				oo.Patients = append(oo.Patients, o.Patients[i])
			}
		}
	}
	for i := range r.Conditions {
		if keep(r.Conditions[i].PatientID) {
			out.Conditions = append(out.Conditions, r.Conditions[i])
			if o != nil {
				oo.Conditions = append(oo.Conditions, o.Conditions[i])
			}
		}
	}
	for i := range r.Observations {
		if keep(r.Observations[i].PatientID) {
			out.Observations = append(out.Observations, r.Observations[i])
			if o != nil {
				oo.Observations = append(oo.Observations, o.Observations[i])
			}
		}
	}
	for i := range r.Encounters {
		if keep(r.Encounters[i].PatientID) {
			out.Encounters = append(out.Encounters, r.Encounters[i])
			if o != nil {
				oo.Encounters = append(oo.Encounters, o.Encounters[i])
			}
		}
	}
	for i := range r.Medications {
		if keep(r.Medications[i].PatientID) {
			out.Medications = append(out.Medications, r.Medications[i])
			if o != nil {
				oo.Medications = append(oo.Medications, o.Medications[i])
			}
		}
	}
	return out, oo
}
