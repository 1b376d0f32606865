package main

import "github.com/spf13/cobra"

// commands lists the top-level subcommands.
func commands() []*cobra.Command {
	return []*cobra.Command{
		demoCommand(),
		caCommand(),
		nodeCommand(),
		synthCommand(),
		auditCommand(),
	}
}

func nodeCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "node",
		Short: "Run a node, or administer its local data",
	}
	c.AddCommand(nodeDataCommands()...)
	return c
}
