module github.com/cxbridge/cxbridge

go 1.26.8

require (
	github.com/google/uuid v1.6.0
	github.com/peterbourgon/ff/v3 v3.4.0
)
