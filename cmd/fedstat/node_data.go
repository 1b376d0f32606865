package main

import "github.com/spf13/cobra"

// nodeDataCommands returns the node's local data commands (import, status).
// Placeholder until the data layer lands.
func nodeDataCommands() []*cobra.Command { return nil }
