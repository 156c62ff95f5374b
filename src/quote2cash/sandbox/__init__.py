"""Local stand-ins for demo and tests: Salesforce and Stripe emulators, Tryton launchers."""
