-- Moves a batch's work on, atomically: pushes the output entries and acknowledges
-- the batch in one step, or does nothing when the batch was already acknowledged
-- (a replay), so every item reaches the next queues exactly once.
--
-- KEYS[1] stream, KEYS[2] batches, KEYS[3] leases, KEYS[4] item counter,
-- KEYS[5] queue-name registry, then per output: stream key, item counter key
-- ARGV[1] consumer group, ARGV[2] batch id, ARGV[3] number of outputs,
-- then per output: queue name, item count, blob; then the batch's entry ids
--
-- Returns 1 when applied, 0 for a replay.
local stream, batches, leases, counter, registry = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, id, outputs = ARGV[1], ARGV[2], tonumber(ARGV[3])
local record = redis.call('HGET', batches, id)
if not record then
  return 0
end
for o = 0, outputs - 1 do
  local name, n, blob = ARGV[4 + 3 * o], ARGV[5 + 3 * o], ARGV[6 + 3 * o]
  redis.call('SADD', registry, name)
  redis.call('XADD', KEYS[6 + 2 * o], '*', 'items', blob, 'n', n)
  redis.call('INCRBY', KEYS[7 + 2 * o], n)
end
local first = 4 + 3 * outputs
local items = tonumber(string.match(record, '(%d+)$')) or 0
for i = first, #ARGV, 1000 do
  local j = math.min(i + 999, #ARGV)
  redis.call('XACK', stream, group, unpack(ARGV, i, j))
  redis.call('XDEL', stream, unpack(ARGV, i, j))
end
redis.call('HDEL', batches, id)
redis.call('ZREM', leases, id)
redis.call('DECRBY', counter, items)
return 1
