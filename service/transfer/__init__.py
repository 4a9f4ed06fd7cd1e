"""Subscribers out to a file and back in: ``formats`` (this service's, Mailchimp's and
listmonk's, both directions), ``exports`` (streamed) and ``imports`` (batched)."""
