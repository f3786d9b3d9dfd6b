-- One row per order item: latest version; amounts converted from cents.
with ranked as (
    select
        order_item_id,
        order_id,
        sku,
        quantity,
        unit_price_cents / 100.0     as unit_price,
        discount_cents / 100.0       as discount_amount,
        updated_at,
        _loaded_at,
        row_number() over (
            partition by order_item_id order by updated_at desc, _loaded_at desc
        ) as rn
    from {{ source('orders_raw', 'order_items') }}
)

select
    order_item_id,
    order_id,
    sku,
    quantity,
    unit_price,
    quantity * unit_price            as gross_amount,
    discount_amount,
    updated_at
from ranked
where rn = 1
