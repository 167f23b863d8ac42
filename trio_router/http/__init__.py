"""The HTTP/1.1 layer: h11 on trio, one task per connection."""
