package main

import "github.com/spf13/cobra"

// auditCommand returns `fedstat audit`. Placeholder until the audit log lands.
func auditCommand() *cobra.Command { return &cobra.Command{Use: "audit", Hidden: true} }
