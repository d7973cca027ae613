"""PostgreSQL access for the server side: connections, migrations, partitions, queries."""
