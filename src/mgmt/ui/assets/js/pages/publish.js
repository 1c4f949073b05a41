// Publishing over HTTP (POST /api/exchanges/{v}/{x}/publish), for the queue and exchange pages.

import { post, exchangePath } from '../api.js';
import { field, form, input, select, textarea, jsonObject } from '../forms.js';

export function publishForm({ vhost, exchange, routingKey = '', fixedKey = false, onDone }) {
  return form({
    submit: 'Publish message',
    grid: true,
    fields: [
      field('Routing key', input('routing_key', { value: routingKey, readonly: fixedKey })),
      field('Delivery mode', select('delivery_mode', [['2', '2 – persistent'], ['1', '1 – transient']], '2')),
      field('Content type', input('content_type', { placeholder: 'text/plain' })),
      field('Headers', textarea('headers', { rows: 1, placeholder: '{"source": "console"}' }), 'JSON object'),
      field('Other properties', textarea('properties', { rows: 1, placeholder: '{"priority": 1}' }), 'JSON object'),
      field('Payload', textarea('payload', { rows: 4, class: 'mono' }), null, true),
    ],
    run: async (v) => {
      const properties = { ...jsonObject(v.properties, 'Other properties'), delivery_mode: Number(v.delivery_mode) };
      const headers = jsonObject(v.headers, 'Headers');
      if (Object.keys(headers).length) properties.headers = headers;
      if (v.content_type) properties.content_type = v.content_type;
      const r = await post(exchangePath(vhost, exchange) + '/publish', {
        routing_key: v.routing_key, properties, payload: v.payload, payload_encoding: 'string',
      });
      if (!r.routed) throw new Error('Message published but not routed: no queue is bound for this routing key.');
      return 'Message published';
    },
    onDone,
  });
}
