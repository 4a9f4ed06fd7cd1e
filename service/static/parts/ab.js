/* An A/B test's variant for this reader (a part of widget.js, loaded where a list runs a
   test): the one kept in local storage, else one picked by weight and kept. Nothing about
   it leaves the browser but the variant's key, with the box's counts. */
export default (variants, store, key) => {
  let pick = variants.find((v) => v.key === store.getItem(key + "variant"));
  if (!pick) {
    let r = Math.random() * variants.reduce((sum, v) => sum + v.weight, 0);
    pick = variants.find((v) => (r -= v.weight) < 0) || variants[0];
    store.setItem(key + "variant", pick.key);
  }
  return pick;
};
