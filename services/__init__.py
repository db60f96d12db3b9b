"""Domain logic shared by the API and the Temporal activities. All queries live in the
`repository` modules; `service` modules hold the rules; `schemas` the shapes clients see."""
