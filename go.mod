module github.com/cxbridge/cxbridge

go 1.26.8

require (
	github.com/google/uuid v1.6.0
	github.com/peterbourgon/ff/v3 v3.4.0
)

require (
	github.com/sony/gobreaker/v2 v2.4.0 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	golang.org/x/oauth2 v0.38.0 // indirect
	golang.org/x/time v0.16.0 // indirect
)
