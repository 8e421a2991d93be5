-- sqlsmith (seed 1): crash: TRAP: failed Assert("ptr == NULL || nodeTag(ptr) == type"), File: "../../../src/include/nodes/nodes.h", Line: 177
select  
  case when EXISTS (
      select  
          ref_1.symbol as c0, 
          ref_1.date as c1, 
          ref_1.symbol as c2, 
          ref_0.id as c3, 
          ref_1.symbol as c4, 
          ref_0.price as c5, 
          ref_1.close as c6
        from 
          public.v_pj_bars as ref_1
        where ref_1.close is not NULL
        limit 78) then 42 else 42 end
     as c0, 
  ref_0.id as c1, 
  ref_0.price as c2, 
  (select qty from public.v_inner limit 1 offset 2)
     as c3
from 
  public.v_lateral as ref_0
where ref_0.price is not NULL
limit 136;
