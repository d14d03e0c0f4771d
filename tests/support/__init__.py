"""What many test files share: the repository's paths, small job functions, a served control
plane, the EC2 and edge fixtures' helpers, and the fake OpenPBS commands."""
