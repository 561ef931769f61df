-- Acknowledges a batch, atomically: its entries leave the stream for good.
--
-- KEYS[1] stream, KEYS[2] batches, KEYS[3] leases, KEYS[4] item counter
-- ARGV[1] consumer group, ARGV[2] batch id, ARGV[3..] the batch's entry ids
--
-- Returns the number of items removed; 0 when the batch was already acknowledged,
-- so a second ack neither fails nor decrements the counter again.
local stream, batches, leases, counter = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, id = ARGV[1], ARGV[2]
local record = redis.call('HGET', batches, id)
if not record then
  return 0
end
local items = tonumber(string.match(record, '(%d+)$')) or 0
for i = 3, #ARGV, 1000 do
  local j = math.min(i + 999, #ARGV)
  redis.call('XACK', stream, group, unpack(ARGV, i, j))
  redis.call('XDEL', stream, unpack(ARGV, i, j))
end
redis.call('HDEL', batches, id)
redis.call('ZREM', leases, id)
redis.call('DECRBY', counter, items)
return items
