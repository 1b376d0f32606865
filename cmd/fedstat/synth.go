package main

import "github.com/spf13/cobra"

// synthCommand returns `fedstat synth`. Placeholder until the generator lands.
func synthCommand() *cobra.Command { return &cobra.Command{Use: "synth", Hidden: true} }
