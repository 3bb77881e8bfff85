"""What people read and do through the web app and the CLI: users and roles, lead listings, reports, exports."""
