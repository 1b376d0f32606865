package main

import "github.com/spf13/cobra"

// commands lists the top-level subcommands.
func commands() []*cobra.Command {
	return []*cobra.Command{
		demoCommand(),
		queryCommand(),
		statsCommand(),
		alertCommand(),
		seriesCommand(),
		nodesCommand(),
		budgetCommand(),
		verifyCommand(),
		tokenCommand(),
		benchCommand(),
		caCommand(),
		coordinatorCommand(),
		nodeCommand(),
		synthCommand(),
		auditCommand(),
		versionCommand(),
		forecastCommand(),
	}
}

func nodeCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "node",
		Short: "Run a node, or administer its local data",
	}
	nodeRun(c)
	c.AddCommand(nodeDataCommands()...)
	c.AddCommand(nodeQueryCommand())
	c.AddCommand(nodeApprovalCommands()...)
	c.AddCommand(nodeDurableCommands()...)
	return c
}
